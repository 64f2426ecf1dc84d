CREATE TABLE "api_keys" (
	"id" varchar(16) PRIMARY KEY NOT NULL,
	"owner_id" integer NOT NULL,
	"name" varchar(200) DEFAULT '' NOT NULL,
	"secret_hash" varchar(64) NOT NULL,
	"scopes" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "audit_chain" (
	"id" integer PRIMARY KEY NOT NULL,
	"head_id" bigint DEFAULT 0 NOT NULL,
	"head_hash" varchar(64) NOT NULL,
	"anchor_id" bigint DEFAULT 0 NOT NULL,
	"anchor_hash" varchar(64) NOT NULL,
	"pruned_at" timestamp with time zone,
	CONSTRAINT "audit_chain_one_row" CHECK ("audit_chain"."id" = 1)
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "audit_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"time" timestamp (3) with time zone NOT NULL,
	"type" varchar(64) NOT NULL,
	"actor" varchar(300) NOT NULL,
	"actor_username" varchar(150),
	"subject" varchar(600),
	"peer_address" varchar(128),
	"user_agent" varchar(512),
	"request_id" varchar(128),
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"prev_hash" varchar(64) NOT NULL,
	"hash" varchar(64) NOT NULL
);
--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "peer_address" varchar(64) DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "user_agent" varchar(512) DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "auth_time" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "amr" varchar(64);--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "successor_sealed" text;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_keys_owner_idx" ON "api_keys" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "audit_events_time_idx" ON "audit_events" USING btree ("time");--> statement-breakpoint
CREATE INDEX "audit_events_type_idx" ON "audit_events" USING btree ("type","id");--> statement-breakpoint
CREATE INDEX "refresh_tokens_access_jti_idx" ON "refresh_tokens" USING btree ("access_jti");--> statement-breakpoint
CREATE INDEX "refresh_tokens_sealed_used_at_idx" ON "refresh_tokens" USING btree ("used_at") WHERE successor_sealed is not null;