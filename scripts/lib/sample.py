"""The main job's sample database (scripts/run): load it, damage it, check it.

  sample.py load URI STATE    (re)creates rbm_sample and records its hashes in file STATE
  sample.py damage URI STATE  deletes documents and drops a collection
  sample.py check URI STATE   exits 1 unless rbm_sample matches what `load` recorded
"""
import datetime
import hashlib
import json
import random
import sys

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, MongoClient

DB = "rbm_sample"


def hashes(db):
    out = {}
    for name in sorted(db.list_collection_names(filter={"type": "collection"})):
        if name.startswith("system."):
            continue
        raw = db.get_collection(name, codec_options=bson.CodecOptions(document_class=RawBSONDocument))
        docs = sorted((d.raw for d in raw.find()), key=lambda b: bson.decode(b)["_id"].__repr__())
        h = hashlib.sha256(b"".join(docs)).hexdigest()
        idx = sorted(i["name"] for i in db[name].list_indexes())
        out[name] = {"count": len(docs), "sha256": h, "indexes": idx}
    for v in db.list_collections(filter={"type": "view"}):
        out["view " + v["name"]] = {"viewOn": v["options"]["viewOn"], "pipeline": json.dumps(v["options"]["pipeline"], default=str)}
    return out


def main():
    cmd, uri, state_file = sys.argv[1], sys.argv[2], sys.argv[3]
    client = MongoClient(uri)
    db = client[DB]
    if cmd == "load":
        client.drop_database(DB)
        rnd = random.Random(7)
        db.create_collection("events", capped=True, size=1 << 20)
        db.create_collection("customers", validator={"$jsonSchema": {"required": ["email"]}})
        db.customers.insert_many([
            {"_id": i, "email": f"c{i}@example.com", "name": f"Customer {i}",
             "since": datetime.datetime(2020, 1, 1) + datetime.timedelta(days=i),
             "tags": [rnd.choice(["gold", "new", "eu", "us"]) for _ in range(3)]}
            for i in range(2000)])
        db.customers.create_index([("email", ASCENDING)], unique=True)
        db.orders.insert_many([
            {"cust": rnd.randrange(2000), "total": bson.Decimal128(f"{rnd.randrange(100000) / 100:.2f}"),
             "items": [{"sku": rnd.randrange(500), "qty": rnd.randint(1, 5)} for _ in range(rnd.randint(1, 4))]}
            for _ in range(5000)])
        db.orders.create_index([("cust", ASCENDING), ("total", -1)])
        db.events.insert_many([{"seq": i, "kind": "login"} for i in range(500)])
        db.command("create", "big_orders", viewOn="orders", pipeline=[{"$match": {"total": {"$gt": bson.Decimal128("900")}}}])
        expected = hashes(db)
        with open(state_file, "w") as f:
            json.dump(expected, f)
        for name, s in expected.items():
            if "count" in s:
                print(f"  {DB}.{name}: {s['count']} documents, indexes {', '.join(s['indexes'])}")
            else:
                print(f"  {name} on {s['viewOn']}")
    elif cmd == "damage":
        r = db.customers.delete_many({"_id": {"$lt": 500}})
        db.orders.drop()
        print(f"  deleted {r.deleted_count} customers, dropped {DB}.orders")
    elif cmd == "check":
        with open(state_file) as f:
            want = json.load(f)
        got = hashes(db)
        if got != want:
            for name in sorted(set(want) | set(got)):
                if want.get(name) != got.get(name):
                    print(f"  MISMATCH {DB}.{name}: expected {want.get(name)}, got {got.get(name)}")
            sys.exit(1)
        for name, s in got.items():
            if "count" in s:
                print(f"  {DB}.{name}: {s['count']} documents, sha256 {s['sha256'][:16]}..., matches the original")
            else:
                print(f"  {name}: matches the original")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
