"""Paging over tables that grow without bound: counts that stay cheap and links that keep the query.

The admin's session and event lists open unfiltered on tables of 100,000 and millions of rows. An exact
`COUNT(*)` there costs in proportion to the table; PostgreSQL's own statistics say how many rows it
holds to within a few percent, for free. So an unfiltered list of a big table shows "about N" from the
statistics, and every filtered or searched list (which is what people page through) is counted exactly.
Pages past the estimate are still served, so an estimate that is a little short never hides a row.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.db import connections
from django.db.models import Max, QuerySet
from django.http import QueryDict
from django.utils.functional import cached_property

# Below this many rows an exact count is cheap enough and reads better than an estimate.
ESTIMATE_ABOVE = 50_000


def estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in the queryset's table, or None when there is none to use."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                       [connection.ops.quote_name(queryset.model._meta.db_table)])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class LargeTablePaginator(Paginator):
    """Exact counts for filtered lists, PostgreSQL's estimate for the unfiltered list of a big table."""

    @cached_property
    def is_estimate(self) -> bool:
        return self._estimate is not None

    @cached_property
    def _estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or queryset.query.where:
            return None
        estimate = estimated_rows(queryset)
        return estimate if estimate is not None and estimate > ESTIMATE_ABOVE else None

    @cached_property
    def count(self) -> int:
        return self._estimate if self._estimate is not None else super().count

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            # An estimate may be a little short: a page past it is served, not refused.
            if self.is_estimate and int(number) >= 1:
                return int(number)
            raise

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom:bottom + self.per_page], number, self)


class AppendOnlyPaginator(LargeTablePaginator):
    """For an append-only log: its unfiltered list is never counted. The estimate is PostgreSQL's
    statistics when it has some, else the highest id (rows are never deleted one by one, so that is
    close and costs one index probe)."""

    @cached_property
    def _estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or queryset.query.where:
            return None
        estimate = estimated_rows(queryset)
        if estimate:
            return estimate
        highest = queryset.model._default_manager.using(queryset.db).aggregate(highest=Max("pk"))["highest"]
        return int(highest or 0)


def page_query(query: QueryDict, name: str, number: int) -> str:
    """The current query string with page `name` set to `number` (other parameters kept)."""
    copy = query.copy()
    copy[name] = str(number)
    return "?" + copy.urlencode()
