// Run by the rs-init service with mongosh inside mongo1's network namespace, so that
// the localhost exception lets it initiate the set and create the first user. Safe
// to run again: every step checks whether it was done.
const env = process.env;
const admin = db.getSiblingDB('admin');

function login() {
  try {
    admin.auth(env.MONGO_ADMIN_USER, env.MONGO_ADMIN_PASSWORD);
    return true;
  } catch (e) {
    return false; // no users yet: the localhost exception applies
  }
}

let authed = login();
if (!authed) {
  // mongo1 first, with a higher priority: the users are created on it.
  const members = env.RS_MEMBERS.split(',').map((host, i) => ({
    _id: i,
    host,
    priority: i === 0 ? 2 : 1,
  }));
  try {
    rs.initiate({ _id: env.RS_NAME, members });
    print(`initiated replica set ${env.RS_NAME}: ${env.RS_MEMBERS}`);
  } catch (e) {
    if (e.codeName !== 'AlreadyInitialized') throw e;
  }
}

for (let waited = 0; !db.hello().isWritablePrimary; waited++) {
  if (waited >= 120) throw new Error('mongo1 did not become primary in 120 s');
  sleep(1000);
}

if (!authed) {
  admin.createUser({ user: env.MONGO_ADMIN_USER, pwd: env.MONGO_ADMIN_PASSWORD, roles: ['root'] });
  authed = login();
  if (!authed) throw new Error('cannot log in as the user just created');
}

// The backup user: the roles PBM documents for pbm-agent, which rbm needs too
// (README, "MongoDB user for the agent").
if (!admin.getRole('pbmAnyAction')) {
  admin.createRole({
    role: 'pbmAnyAction',
    privileges: [{ resource: { anyResource: true }, actions: ['anyAction'] }],
    roles: [],
  });
}
if (!admin.getUser(env.PBM_USER)) {
  admin.createUser({
    user: env.PBM_USER,
    pwd: env.PBM_PASSWORD,
    roles: [
      { db: 'admin', role: 'readWrite' },
      { db: 'admin', role: 'backup' },
      { db: 'admin', role: 'clusterMonitor' },
      { db: 'admin', role: 'restore' },
      { db: 'admin', role: 'pbmAnyAction' },
    ],
  });
  print(`created user ${env.PBM_USER}`);
}
print('replica set and users ready');
