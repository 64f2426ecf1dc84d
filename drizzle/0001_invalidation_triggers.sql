-- Every change that can alter who may do what announces itself on the
-- protoguard_invalidate channel, whoever makes it (any server instance, the
-- CLI, psql). Server caches LISTEN and drop what the payload names:
--   user:<id>    one user's row, grants or memberships
--   token:<jti>  one revoked access token
--   all          groups, permissions or group grants (may touch many users)
CREATE OR REPLACE FUNCTION protoguard_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text := TG_ARGV[0];
  col text := TG_ARGV[1];
BEGIN
  IF kind = 'all' THEN
    PERFORM pg_notify('protoguard_invalidate', 'all');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('protoguard_invalidate', kind || ':' || (to_jsonb(OLD) ->> col));
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('protoguard_invalidate', kind || ':' || (to_jsonb(NEW) ->> col));
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
-- last_login and the OTP replay guard change on every login; they grant
-- nothing, so they do not flush caches.
CREATE TRIGGER users_invalidate
  AFTER INSERT OR DELETE OR UPDATE OF username, email, is_active, is_staff, is_superuser, credentials_changed_at
  ON users FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'id');
--> statement-breakpoint
CREATE TRIGGER user_permissions_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON user_permissions
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'user_id');
--> statement-breakpoint
CREATE TRIGGER user_groups_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON user_groups
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'user_id');
--> statement-breakpoint
CREATE TRIGGER revoked_tokens_invalidate
  AFTER INSERT OR UPDATE ON revoked_tokens
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('token', 'jti');
--> statement-breakpoint
CREATE TRIGGER group_permissions_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER permissions_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON permissions
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
--> statement-breakpoint
CREATE TRIGGER groups_invalidate
  AFTER UPDATE OR DELETE OR TRUNCATE ON groups
  FOR EACH STATEMENT EXECUTE FUNCTION protoguard_notify('all');
