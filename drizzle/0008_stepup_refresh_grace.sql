ALTER TABLE "refresh_tokens" ADD COLUMN "auth_time" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "amr" varchar(64);--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "successor_sealed" text;--> statement-breakpoint
CREATE INDEX "refresh_tokens_access_jti_idx" ON "refresh_tokens" USING btree ("access_jti");--> statement-breakpoint
CREATE INDEX "refresh_tokens_sealed_used_at_idx" ON "refresh_tokens" USING btree ("used_at") WHERE successor_sealed is not null;