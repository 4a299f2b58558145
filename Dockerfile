FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY realtime_site ./realtime_site
COPY voice ./voice
RUN pip install --no-cache-dir .
COPY . .
# Static files are collected at build time; DEBUG off needs a key, so give collectstatic a throwaway one.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-only-not-used-at-runtime python manage.py collectstatic --noinput
RUN useradd --create-home voice
USER voice
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "realtime_site.asgi:application"]
