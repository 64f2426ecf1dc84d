/**
 * A ServeApp declaring guardtest's KindService (rules by principal kind), for CLI tests that
 * read rules through `--routes` (`protoguard who-can --routes test/helpers/kinds-app.ts`). It
 * registers no handler: only its descriptors are read.
 */
import { KindService } from "../../gen/guardtest/v1/kinds_pb.js";
import { defineServeApp } from "../../src/exports/server.js";

export default defineServeApp({
  services: [KindService],
  routes: () => {},
});
