-- A key's revocation, expiry, scopes or owner changing announces its owner on
-- protoguard_invalidate (payload user:<owner_id>), so every instance drops its
-- cached answer for the key at once, whoever made the change (a server, the
-- CLI, psql). last_used_at changes at most once a minute and grants nothing:
-- it does not flush caches. A new key needs no announcement: its id is fresh.
CREATE TRIGGER api_keys_invalidate
  AFTER DELETE OR UPDATE OF revoked_at, expires_at, scopes, owner_id, secret_hash
  ON api_keys FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'owner_id');
