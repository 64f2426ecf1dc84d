/**
 * `protoguard import django --database-url URL`: users, groups and
 * permissions from a Django database into protoguard's (see
 * store/django-import.ts for what is read and how re-imports behave).
 */
import { importFromDjango, type DjangoImportReport } from "../store/django-import.js";
import { defineSubcommand, type Subcommand } from "./args.js";
import { withRuntime, type CliIo } from "./io.js";
import { runAudited } from "./audit-record.js";
import { EXIT_OK, UsageError } from "./errors.js";

/** The lines `protoguard import django` prints for a report. */
export function formatDjangoImportReport(report: DjangoImportReport): string[] {
  const u = report.users;
  const lines = [
    `${report.dryRun ? "dry run, nothing written: would import" : "imported"} from Django: ` +
      `users ${u.created} created, ${u.updated} updated, ${u.deactivated} deactivated, ` +
      `${u.unchanged} unchanged, ${u.skipped} skipped; groups ${report.groups.created} created; ` +
      `permissions ${report.permissions.created} created; grants ${report.grants.added} added, ` +
      `${report.grants.removed} removed`,
  ];
  for (const { username, scheme } of report.passwordResetRequired) {
    lines.push(`must reset password: "${username}" (hash scheme "${scheme}" cannot be verified)`);
  }
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines;
}

const importDjango = defineSubcommand({
  usage: "import django --database-url URL [--user-table TABLE] [--dry-run]",
  summary:
    "import users, groups and permissions from a Django PostgreSQL database (read-only, one transaction, idempotent)",
  flags: { "database-url": "string", "user-table": "string", "dry-run": "boolean" },
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run({ flags }, env, io: CliIo) {
    const databaseUrl = flags["database-url"];
    if (databaseUrl === undefined || databaseUrl === "") throw new UsageError("missing --database-url URL");
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
      throw new UsageError("--database-url must be a postgres:// URL (only PostgreSQL is read)");
    }
    const options = { databaseUrl, userTable: flags["user-table"], dryRun: flags["dry-run"] === true };
    const report = await withRuntime(env, io, (runtime) =>
      runAudited(
        runtime,
        options,
        (scoped, input) => importFromDjango(scoped.database, input),
        // A dry run writes nothing, so records nothing; the counts only, never a hash.
        (done) =>
          done.dryRun
            ? undefined
            : {
                type: "django.imported",
                detail: {
                  users: done.users,
                  groups: done.groups,
                  permissions: done.permissions,
                  grants: done.grants,
                  passwordResetRequired: done.passwordResetRequired.length,
                },
              },
      ),
    );
    for (const line of formatDjangoImportReport(report)) io.out(line);
    return EXIT_OK;
  },
});

/** The `import` command group. */
export const importSubcommands: Readonly<Record<string, Subcommand>> = { django: importDjango };
