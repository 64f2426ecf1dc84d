/**
 * `protoguard user link|unlink`: attach an identity provider's subject to a local account, for
 * trusted issuers that do not provision users (`"provision": false`), or detach it.
 */
import { linkExternalIdentity, unlinkExternalIdentity } from "../store/external-identities.js";
import { assertValidUsername } from "../store/users.js";
import { defineStoreSubcommand } from "./args.js";
import { CliError, UsageError } from "./errors.js";

function issuerAndSubject(issuer: string, subject: string) {
  if (issuer.length === 0 || issuer.length > 512)
    throw new UsageError("<issuer> must be the exact iss, 1-512 characters");
  if (subject.length === 0 || subject.length > 255) throw new UsageError("<subject> must be 1-255 characters");
  return { issuer, subject };
}

/** `user link <username> <issuer> <subject>`. */
export const userLink = defineStoreSubcommand({
  usage: "user link <username> <issuer> <subject>",
  summary: "let the identity provider <issuer>'s subject <subject> (its sub, or oid...) call as this user",
  positionals: { min: 3, max: 3, names: "<username> <issuer> <subject>" },
  prepare: ({ positionals: [username, issuer, subject] }) => ({
    username: assertValidUsername(username!),
    ...issuerAndSubject(issuer!, subject!),
  }),
  work: (runtime, { username, issuer, subject }) =>
    linkExternalIdentity(runtime.database.db, issuer, subject, username),
  report: (_, { username, issuer, subject }) => `linked ${issuer} subject "${subject}" to user "${username}"`,
  audit: (_, { username, issuer, subject }) => ({
    type: "identity.linked",
    subject: `user:${username}`,
    detail: { issuer, externalSubject: subject },
  }),
});

/** `user unlink <issuer> <subject>`. */
export const userUnlink = defineStoreSubcommand({
  usage: "user unlink <issuer> <subject>",
  summary: "stop the identity provider's subject from calling as its linked user (the user stays)",
  positionals: { min: 2, max: 2, names: "<issuer> <subject>" },
  prepare: ({ positionals: [issuer, subject] }) => issuerAndSubject(issuer!, subject!),
  async work(runtime, { issuer, subject }) {
    if (!(await unlinkExternalIdentity(runtime.database.db, issuer, subject))) {
      throw new CliError(`${issuer} subject "${subject}" is not linked`);
    }
  },
  report: (_, { issuer, subject }) => `unlinked ${issuer} subject "${subject}"`,
  audit: (_, { issuer, subject }) => ({ type: "identity.unlinked", detail: { issuer, externalSubject: subject } }),
});
