-- The permissions AdminService's rules name (proto/protoguard/v1/admin.proto), as Django's
-- auth app creates its four per model: they must exist to be granted to users, groups and
-- service accounts. A row already there (granted by hand before this migration) is kept.
INSERT INTO "permissions" ("app_label", "codename", "name") VALUES
  ('protoguard', 'view_user', 'Can view user'),
  ('protoguard', 'add_user', 'Can add user'),
  ('protoguard', 'change_user', 'Can change user'),
  ('protoguard', 'delete_user', 'Can delete user'),
  ('protoguard', 'view_group', 'Can view group'),
  ('protoguard', 'add_group', 'Can add group'),
  ('protoguard', 'change_group', 'Can change group'),
  ('protoguard', 'delete_group', 'Can delete group'),
  ('protoguard', 'view_serviceaccount', 'Can view service account'),
  ('protoguard', 'add_serviceaccount', 'Can add service account'),
  ('protoguard', 'change_serviceaccount', 'Can change service account'),
  ('protoguard', 'delete_serviceaccount', 'Can delete service account'),
  ('protoguard', 'view_session', 'Can view session'),
  ('protoguard', 'add_session', 'Can add session'),
  ('protoguard', 'change_session', 'Can change session'),
  ('protoguard', 'delete_session', 'Can delete session'),
  ('protoguard', 'view_apikey', 'Can view API key'),
  ('protoguard', 'add_apikey', 'Can add API key'),
  ('protoguard', 'change_apikey', 'Can change API key'),
  ('protoguard', 'delete_apikey', 'Can delete API key'),
  ('protoguard', 'view_auditevent', 'Can view audit event'),
  ('protoguard', 'view_policy', 'Can view policy')
ON CONFLICT ("app_label", "codename") DO NOTHING;
