"""Static files in production: hashed names, gzip and Brotli copies, served by WhiteNoise."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed manifest storage, with ES module imports rewritten to hashed names too.

    chat.js imports ./realtime-client.js: left unhashed, that import would be served with a short cache
    lifetime and could pair a new chat.js with an old client. Rewritten, every file of a release is an
    immutable, hashed name (Django's `support_js_module_import_aggregation`).
    """

    support_js_module_import_aggregation = True
