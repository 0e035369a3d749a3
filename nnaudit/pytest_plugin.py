"""nnaudit's pytest plugin (registered through the ``pytest11`` entry point).

Only hooks live here, and they import nothing heavy until an nnaudit option,
marker or checks file is actually in use, so a test session that does not use
nnaudit pays nothing for having it installed.
"""
