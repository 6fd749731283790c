# Fakes of macOS's dscl, launchctl, chown and id for packaging/macos_test.go:
# each records its call in $FAKE_STATE/calls.log (paths under $VRIFT_ROOT
# shown without it) and keeps what it changed in $FAKE_STATE/*.json, so that
# a second run of install.sh sees the user, group and job the first made.
import json, os, sys

state = os.environ["FAKE_STATE"]
root = os.environ.get("VRIFT_ROOT", "")
prog = os.path.basename(sys.argv[1])
args = sys.argv[2:]


def unroot(a):
    return a[len(root):] if root and a.startswith(root) else a


with open(os.path.join(state, "calls.log"), "a") as f:
    f.write(" ".join([prog] + [unroot(a) for a in args]) + "\n")


def load(name, default):
    p = os.path.join(state, name + ".json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)
    return default


def save(name, v):
    with open(os.path.join(state, name + ".json"), "w") as f:
        json.dump(v, f, indent=1, sort_keys=True)


def fail(msg, code=1):
    sys.stderr.write(prog + ": " + msg + "\n")
    sys.exit(code)


db = load("dscl", {"Users": {}, "Groups": {}})

if prog == "id":
    if args != ["-u"]:
        fail("fake id knows only -u")
    print(os.environ.get("FAKE_UID", "0"))
elif prog == "dscl":
    if len(args) < 3 or args[0] != ".":
        fail("usage: dscl . -command /Kind/name [key [value]]")
    cmd, path, rest = args[1], args[2], args[3:]
    kind, _, name = path.strip("/").partition("/")
    if kind not in db:
        fail("unknown kind " + kind)
    recs = db[kind]
    if cmd == "-list":
        for n in sorted(recs):
            if not rest:
                print(n)
            elif rest[0] in recs[n]:
                print(n, recs[n][rest[0]])
    elif cmd == "-read":
        if name not in recs:
            fail("eDSRecordNotFound", 56)
        if rest and rest[0] not in recs[name]:
            fail("No such key: " + rest[0], 181)
        for k, v in recs[name].items():
            if not rest or k == rest[0]:
                print(k + ": " + v)
    elif cmd == "-create":
        rec = recs.setdefault(name, {})
        if len(rest) == 2:
            rec[rest[0]] = rest[1]
        elif rest:
            fail("-create takes a key and one value")
        save("dscl", db)
    elif cmd == "-delete":
        if name not in recs:
            fail("eDSRecordNotFound", 56)
        del recs[name]
        save("dscl", db)
    else:
        fail("fake dscl does not know " + cmd)
elif prog == "chown":
    # The owner must exist, as for the real chown; ownership itself cannot
    # be faked on Linux, so the call log is what the test checks.
    owner, paths = args[0], args[1:]
    user, _, group = owner.partition(":")
    known_u = set(db["Users"]) | {"root"}
    known_g = set(db["Groups"]) | {"wheel"}
    if user not in known_u or (group and group not in known_g):
        fail("illegal user or group name: " + owner)
    for p in paths:
        if not os.path.lexists(p):
            fail(p + ": No such file or directory")
elif prog == "launchctl":
    jobs = load("launchd", {})
    cmd = args[0] if args else ""
    if cmd == "print":
        # system/LABEL or gui/UID/LABEL
        if args[1].rsplit("/", 1)[1] not in jobs:
            fail("Could not find service", 113)
        print(args[1] + " = { state = running }")
    elif cmd == "enable":
        pass
    elif cmd == "bootstrap":
        import plistlib

        domain = args[1]
        with open(args[2], "rb") as f:
            p = plistlib.load(f)
        label = p["Label"]
        if label in jobs:
            fail("Bootstrap failed: 5: Input/output error (already loaded)", 5)
        # What launchd would trip over at load or first start.
        prog_path = p["ProgramArguments"][0]
        if not os.access(root + prog_path, os.X_OK):
            fail("program not executable: " + prog_path)
        if domain == "system":
            if p["UserName"] not in db["Users"] or p["GroupName"] not in db["Groups"]:
                fail("no such user or group: %s:%s" % (p["UserName"], p["GroupName"]))
        elif domain.startswith("gui/"):
            # A LaunchAgent runs as the user whose domain it is in.
            if "UserName" in p or not os.path.basename(args[2]) == label + ".plist":
                fail("an agent names no UserName, and its plist is named after its label")
            if domain != "gui/" + os.environ.get("FAKE_UID", "0"):
                fail("Bootstrap failed: 125: Domain does not support specified action", 125)
        else:
            fail("unknown domain " + domain)
        for s in p.get("Sockets", {}).values():
            if not os.path.isdir(os.path.dirname(root + s["SockPathName"])):
                fail("socket directory missing: " + s["SockPathName"])
        jobs[label] = unroot(args[2])
        save("launchd", jobs)
    elif cmd == "bootout":
        label = args[1].rsplit("/", 1)[1]
        if label not in jobs:
            fail("Boot-out failed: 3: No such process", 3)
        del jobs[label]
        save("launchd", jobs)
    else:
        fail("fake launchctl does not know " + cmd)
