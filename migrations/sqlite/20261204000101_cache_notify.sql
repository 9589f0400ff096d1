-- Registry cache coherence between replicas needs PostgreSQL's NOTIFY (see the PostgreSQL
-- migration of the same name). A SQLite database has one server process, whose own writes
-- keep its cache coherent: nothing to create here.
SELECT 1;
