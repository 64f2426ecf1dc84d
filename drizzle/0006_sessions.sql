ALTER TABLE "refresh_tokens" ADD COLUMN "peer_address" varchar(64) DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "user_agent" varchar(512) DEFAULT '' NOT NULL;