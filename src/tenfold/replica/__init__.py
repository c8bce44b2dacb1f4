"""A replica of a dedicated deployment: one engine process serving the replica protocol over HTTP
(``tenfold serve --role engine``)."""
