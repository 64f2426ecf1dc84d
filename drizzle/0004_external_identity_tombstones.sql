CREATE TABLE "external_identity_tombstones" (
	"issuer" varchar(512) NOT NULL,
	"subject" varchar(255) NOT NULL,
	"removed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "external_identity_tombstones_issuer_subject_pk" PRIMARY KEY("issuer","subject")
);
--> statement-breakpoint
-- Unlinking or deleting stays final: whatever removes a link (user unlink,
-- user delete and its cascade, Django's admin, psql) leaves a tombstone, and
-- provisioning refuses a tombstoned subject until an admin links it again.
CREATE OR REPLACE FUNCTION protoguard_external_identity_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO external_identity_tombstones (issuer, subject) VALUES (OLD.issuer, OLD.subject)
  ON CONFLICT (issuer, subject) DO UPDATE SET removed_at = now();
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER external_identities_tombstone
  AFTER DELETE ON external_identities
  FOR EACH ROW EXECUTE FUNCTION protoguard_external_identity_tombstone();
--> statement-breakpoint
-- A service account authenticates with its own credentials only: links made to one before
-- `user link` refused them are removed (and so tombstoned, until linked to a person).
DELETE FROM external_identities
  WHERE user_id IN (SELECT id FROM users WHERE kind = 'service');
