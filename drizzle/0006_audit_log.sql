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
CREATE INDEX "audit_events_time_idx" ON "audit_events" USING btree ("time");--> statement-breakpoint
CREATE INDEX "audit_events_type_idx" ON "audit_events" USING btree ("type","id");