"""Paging over tables that grow without bound: counts that stay cheap and links that keep the query.

The admin's session and event lists open on tables of 100,000 and millions of rows, and an exact
`COUNT(*)` costs in proportion to what it counts, whatever the page shows. So:

- an unfiltered list of a big table shows "about N" from PostgreSQL's statistics (free, within a few
  percent);
- a filtered or searched list is counted up to COUNT_UP_TO rows; past that it says "more than 1,000",
  which is what a person paging through needs to know (narrow the search), at a cost bounded by the cap.

Neither hides a row: pages past the estimate or the cap are still served, and the pager says which
of the two it shows (templates/admin/voice/pagination.html).
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils.functional import cached_property

# Below this many rows an exact count is cheap enough and reads better than an estimate.
ESTIMATE_ABOVE = 50_000
# A filtered list is counted up to this many rows.
COUNT_UP_TO = 1_000


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
        if self._estimate is not None:
            return self._estimate
        queryset = self.object_list
        if isinstance(queryset, QuerySet):
            # Without its ORDER BY: the order of the rows counted does not matter, the planner's freedom does.
            return int(queryset.order_by()[:COUNT_UP_TO + 1].count())
        return super().count

    @cached_property
    def is_capped(self) -> bool:
        """The count stopped at COUNT_UP_TO: there are more rows than it says."""
        return not self.is_estimate and isinstance(self.object_list, QuerySet) and self.count > COUNT_UP_TO

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            # Past an estimate that is a little short, or past the counted cap: served, not refused.
            if (self.is_estimate or self.is_capped) and int(number) >= 1:
                return int(number)
            raise

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.object_list[bottom:bottom + self.per_page], number, self)


class AppendOnlyPaginator(LargeTablePaginator):
    """For an append-only log (the session events): the same honest rules as any large table.

    It used to take the highest id for the unfiltered count whenever PostgreSQL had no statistics (SQLite
    always): an upper bound, not a count, and far from the truth once sessions were deleted with their
    events, so the list claimed pages that came back empty. The capped count costs at most
    COUNT_UP_TO + 1 rows of the primary key index and says "more than 1,000" when it stops; PostgreSQL's
    statistics still give "about N" for a big table.
    """


def page_query(query: QueryDict, name: str, number: int) -> str:
    """The current query string with page `name` set to `number` (other parameters kept)."""
    copy = query.copy()
    copy[name] = str(number)
    return "?" + copy.urlencode()
