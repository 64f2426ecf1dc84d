CREATE TABLE "external_identities" (
	"issuer" varchar(512) NOT NULL,
	"subject" varchar(255) NOT NULL,
	"user_id" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "external_identities_issuer_subject_pk" PRIMARY KEY("issuer","subject")
);
--> statement-breakpoint
CREATE TABLE "service_accounts" (
	"user_id" integer PRIMARY KEY NOT NULL,
	"client_id" varchar(64) NOT NULL,
	"secret_hash" text NOT NULL,
	"previous_secret_hash" text,
	"previous_secret_expires_at" timestamp with time zone,
	"tls_identity" varchar(512),
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"secret_rotated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "service_accounts_client_id_unique" UNIQUE("client_id"),
	CONSTRAINT "service_accounts_tls_identity_unique" UNIQUE("tls_identity")
);
--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "kind" varchar(16) DEFAULT 'user' NOT NULL;--> statement-breakpoint
ALTER TABLE "external_identities" ADD CONSTRAINT "external_identities_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "service_accounts" ADD CONSTRAINT "service_accounts_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "external_identities_user_id_idx" ON "external_identities" USING btree ("user_id");--> statement-breakpoint
ALTER TABLE "users" ADD CONSTRAINT "users_kind_check" CHECK ("users"."kind" in ('user', 'service'));--> statement-breakpoint
-- A user's kind decides which rules admit it, so changing it flushes the
-- user's cached principal like every other column that grants something.
DROP TRIGGER IF EXISTS users_invalidate ON users;
--> statement-breakpoint
CREATE TRIGGER users_invalidate
  AFTER INSERT OR DELETE OR UPDATE OF username, email, kind, is_active, is_staff, is_superuser, credentials_changed_at
  ON users FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'id');
--> statement-breakpoint
-- Caches map an external (issuer, subject) or a TLS identity to a user id;
-- unlinking or relinking announces the user so those entries are dropped.
CREATE TRIGGER external_identities_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON external_identities
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'user_id');
--> statement-breakpoint
CREATE TRIGGER service_accounts_invalidate
  AFTER INSERT OR UPDATE OR DELETE ON service_accounts
  FOR EACH ROW EXECUTE FUNCTION protoguard_notify('user', 'user_id');
