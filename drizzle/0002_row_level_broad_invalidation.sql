-- Statement-level triggers announced `all` even for statements that changed
-- no row (an idempotent `insert ... on conflict do nothing` at every server
-- start flushed every cache on the database). Row-level triggers fire only
-- for rows that changed; TRUNCATE, which has no rows, stays statement-level.
-- pg_notify folds identical payloads within a transaction, so a bulk change
-- still sends one `all`.
DROP TRIGGER IF EXISTS group_permissions_invalidate ON group_permissions;
--> statement-breakpoint
DROP TRIGGER IF EXISTS permissions_invalidate ON permissions;
--> statement-breakpoint
DROP TRIGGER IF EXISTS groups_invalidate ON groups;
--> statement-breakpoint
CREATE TRIGGER group_permissions_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON group_permissions
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER group_permissions_truncate_invalidate
  AFTER TRUNCATE ON group_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER permissions_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON permissions
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER permissions_truncate_invalidate
  AFTER TRUNCATE ON permissions
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER groups_invalidate
  AFTER UPDATE OR DELETE ON groups
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER groups_truncate_invalidate
  AFTER TRUNCATE ON groups
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
