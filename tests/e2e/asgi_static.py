"""The production ASGI application with static files served, for the end-to-end server.

Production serves collectstatic's files through WhiteNoise (tests/test_production_static.py); the e2e
server runs plain daphne with debug on, on the real `realtime_site.asgi.application`, and only adds what
`manage.py runserver` adds: Django's static handler for HTTP requests under STATIC_URL. Websockets pass
straight through.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from realtime_site.asgi import application as site_application

application = ASGIStaticFilesHandler(site_application)
