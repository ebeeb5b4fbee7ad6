"""The old two-service design, kept as the baseline `pulp-content bench` measures against.

As Pulp 3 had it in late 2018: a Django content view under a WSGI server that serves
stored artifacts and answers 302 to a separate streamer for everything else, and the
streamer, which resolves the same path again and downloads while streaming. The ORM is
used the way that code used it, query by query, without tuning.
"""
