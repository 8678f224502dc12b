-- SQLite's 0022 makes its database keep the audit chains whole with triggers, so that its
-- audit writer commits a group in one statement. PostgreSQL's writer keeps its locking head
-- upsert, which queues concurrent hosts: nothing changes here; the file keeps the two
-- flavours' migrations in step.
SELECT 1;
