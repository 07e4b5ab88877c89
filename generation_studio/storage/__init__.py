"""Files on disk: record naming and layout (``layout``), atomic writes
(``atomic``), the folder of records and their files (``folder``) and day
archives (``archive``). Nothing here knows about the index."""
