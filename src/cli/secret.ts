/**
 * `protoguard secret`: the HS256 secret this CLI signs tokens with, as
 * `PROTOGUARD_JWT_SECRET=…`, so the application's own server (wired by hand
 * with `createKeyring`) verifies the tokens `protoguard token` mints. With
 * no `PROTOGUARD_JWT_SECRET` on the embedded database that is the
 * development secret of the data directory, generated now if need be.
 */
import { loadConfig } from "../runtime/config.js";
import { ensureDevelopmentSecret } from "../runtime/dev-secret.js";
import { defineSubcommand } from "./args.js";
import { CliError, EXIT_OK } from "./errors.js";

export const secretSubcommand = defineSubcommand({
  usage: "secret",
  summary:
    "print PROTOGUARD_JWT_SECRET=<the secret this CLI signs with> (the development one of PROTOGUARD_DATA_DIR unless set), for your server's environment",
  flags: {},
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run(_args, env, io) {
    const config = loadConfig(env);
    if (config.algorithm !== "HS256") {
      throw new CliError(
        `PROTOGUARD_JWT_ALGORITHM=${config.algorithm} signs with PROTOGUARD_JWT_PRIVATE_KEY: there is no shared secret; give your server PROTOGUARD_JWT_PUBLIC_KEY's key, or its /.well-known/jwks.json`,
      );
    }
    if (config.secret !== undefined) {
      io.out(`PROTOGUARD_JWT_SECRET=${config.secret}`);
      return EXIT_OK;
    }
    if (config.databaseUrl !== undefined) {
      throw new CliError(
        "PROTOGUARD_JWT_SECRET is not set, and with DATABASE_URL there is no development secret: set it (at least 32 bytes) for the CLI and every server",
      );
    }
    const { secret, path } = await ensureDevelopmentSecret(config.dataDir);
    io.err(`protoguard: the development secret in ${path}; set PROTOGUARD_JWT_SECRET in production`);
    io.out(`PROTOGUARD_JWT_SECRET=${secret}`);
    return EXIT_OK;
  },
});
