#!/usr/bin/env python3
"""Creates users, groups and grants through Django's ORM and mints simplejwt
tokens, for test/django-migration.test.ts. Prints one JSON object.

  seed.py seed            the initial population and tokens
  seed.py change          changes made in Django after the first import
  seed.py check-access T  whether simplejwt's JWTAuthentication accepts access token T
  seed.py bulk N          N users (one shared pbkdf2 hash), each in one of 10 groups with a grant
"""
import base64
import hashlib
import json
import os
import sys
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "protoguard_test.settings")
import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from rest_framework_simplejwt.tokens import RefreshToken  # noqa: E402


def has_module(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def shop_permission(codename):
    ct, _ = ContentType.objects.get_or_create(app_label="shop", model="order")
    perm, _ = Permission.objects.get_or_create(codename=codename, content_type=ct, defaults={"name": codename})
    return perm


def django_scrypt(password, salt="pgsaltpgsaltpgsa", n=2**14, r=8, p=1):
    # Django 4.0's ScryptPasswordHasher format (Debian's Django 3.2 has no such hasher).
    key = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=0, dklen=64)
    return "scrypt$%d$%s$%d$%d$%s" % (n, salt, r, p, base64.b64encode(key).decode("ascii"))


def seed():
    out = {"passwords": {}, "tokens": {}, "ids": {}}
    alice = User.objects.create_user("alice", "alice@example.com", "alice-password-1")
    alice.user_permissions.add(shop_permission("view_order"))
    bob = User.objects.create_user("bob", "bob@example.com", "bob-password-1")
    support = Group.objects.create(name="support")
    support.permissions.add(shop_permission("refund_order"), shop_permission("view_order"))
    bob.groups.add(support)
    root = User.objects.create_superuser("root", "root@example.com", "root-password-1")
    carol = User.objects.create_user("carol", "carol@example.com", "carol-password-1")
    carol.is_active = False
    carol.save()
    frank = User.objects.create_user("frank", "frank@example.com")
    frank.password = make_password("frank-password-1", hasher="md5")
    frank.save()
    gina = User.objects.create_user("gina", "gina@example.com")
    gina.password = django_scrypt("gina-password-1")
    gina.save()
    nopass = User.objects.create_user("nopass", "nopass@example.com")
    nopass.set_unusable_password()
    nopass.save()
    out["passwords"].update(
        alice="alice-password-1",
        bob="bob-password-1",
        root="root-password-1",
        carol="carol-password-1",
        frank="frank-password-1",
        gina="gina-password-1",
    )
    if has_module("bcrypt"):
        dave = User.objects.create_user("dave", "dave@example.com")
        dave.password = make_password("dave-password-1", hasher="bcrypt_sha256")
        dave.save()
        out["passwords"]["dave"] = "dave-password-1"
    if has_module("argon2"):
        erin = User.objects.create_user("erin", "erin@example.com")
        erin.password = make_password("erin-password-1", hasher="argon2")
        erin.save()
        out["passwords"]["erin"] = "erin-password-1"
    for user in User.objects.all():
        out["ids"][user.username] = user.id
    out["hashes"] = {u.username: u.password.split("$", 1)[0] for u in User.objects.all()}

    live = RefreshToken.for_user(alice)
    out["tokens"]["alice_refresh"] = str(live)
    out["tokens"]["alice_access"] = str(live.access_token)
    out["tokens"]["root_refresh"] = str(RefreshToken.for_user(root))
    out["tokens"]["gina_refresh"] = str(RefreshToken.for_user(gina))
    out["tokens"]["gina_refresh_before_change"] = str(RefreshToken.for_user(gina))
    # An RS256 setup (ALGORITHM "RS256", SIGNING_KEY / VERIFYING_KEY PEMs): simplejwt's
    # TokenBackend signs the payload RefreshToken.for_user makes; no kid, as simplejwt writes.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from rest_framework_simplejwt.backends import TokenBackend

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    backend = TokenBackend("RS256", signing_key=private_pem, verifying_key=public_pem)
    out["tokens"]["alice_rs256_refresh"] = backend.encode(dict(RefreshToken.for_user(alice).payload))
    out["rs256_public_key"] = public_pem
    blacklisted = RefreshToken.for_user(bob)
    blacklisted.blacklist()
    out["tokens"]["bob_blacklisted_refresh"] = str(blacklisted)
    out["tokens"]["bob_access"] = str(RefreshToken.for_user(bob).access_token)
    expired = RefreshToken.for_user(alice)
    expired.set_iat(at_time=expired.current_time - timedelta(days=2))
    expired.set_exp(from_time=expired.current_time - timedelta(days=2), lifetime=timedelta(hours=1))
    out["tokens"]["alice_expired_refresh"] = str(expired)
    return out


def change():
    alice = User.objects.get(username="alice")
    alice.email = "alice@new.example.com"
    alice.save()
    bob = User.objects.get(username="bob")
    bob.user_permissions.add(shop_permission("cancel_order"))
    root = User.objects.get(username="root")
    root.is_active = False
    root.save()
    gina = User.objects.get(username="gina")
    gina.set_password("gina-password-2")
    gina.save()
    hank = User.objects.create_user("hank", "hank@example.com", "hank-password-1")
    return {"ids": {"hank": hank.id}, "passwords": {"hank": "hank-password-1", "gina": "gina-password-2"}}


def bulk(n):
    hashed = make_password("bulk-password-1")
    User.objects.bulk_create(
        [User(username="user%06d" % i, email="user%06d@example.com" % i, password=hashed) for i in range(n)],
        batch_size=2000,
    )
    groups = [Group.objects.create(name="team%d" % g) for g in range(10)]
    perm = shop_permission("view_order")
    for g in groups:
        g.permissions.add(perm)
    through = User.groups.through
    grants = User.user_permissions.through
    users = list(User.objects.values_list("id", flat=True))
    through.objects.bulk_create([through(user_id=u, group_id=groups[u % 10].id) for u in users], batch_size=5000)
    grants.objects.bulk_create([grants(user_id=u, permission_id=perm.id) for u in users], batch_size=5000)
    return {"users": len(users)}


def check_access(token):
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

    auth = JWTAuthentication()
    try:
        validated = auth.get_validated_token(token)
        user = auth.get_user(validated)
        return {"ok": True, "user_id": user.id, "username": user.username}
    except (InvalidToken, AuthenticationFailed) as error:
        return {"ok": False, "error": type(error).__name__, "detail": str(error.detail)}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "seed":
        result = seed()
    elif command == "change":
        result = change()
    elif command == "check-access":
        result = check_access(sys.argv[2])
    elif command == "bulk":
        result = bulk(int(sys.argv[2]))
    else:
        raise SystemExit("unknown command " + command)
    print(json.dumps(result))
