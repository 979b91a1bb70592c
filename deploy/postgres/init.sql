-- Extensions the services use, created once by the superuser so that the
-- services' own role does not need to be one. Each service creates its own
-- schema and tables at start.
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
