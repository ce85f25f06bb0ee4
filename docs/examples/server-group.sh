sg="node apps/server-group/src/main.ts"
$sg keygen --out /etc/kv/cluster.key                  # mode 0600; copy it to every host
$sg nameserver --listen tcp://127.0.0.1:7400 --cluster-key /etc/kv/cluster.key
$sg serve --id 1 --peers 1=udp://127.0.0.1:7401,2=udp://127.0.0.1:7402,3=udp://127.0.0.1:7403 \
  --http 127.0.0.1:8401 --store tcp://127.0.0.1:7400 --cluster-key /etc/kv/cluster.key
token=$(node -e 'const c=require("node:crypto"),f=require("node:fs");
  console.log(c.createHmac("sha256",Buffer.from(f.readFileSync(process.argv[1],"utf8").trim(),"hex"))
  .update("understudy server-group http api").digest("hex"))' /etc/kv/cluster.key)
curl -L -X PUT -H "x-cluster-token: $token" localhost:8401/kv/greeting -d hello  # a backup answers 307
curl localhost:8401/status                             # role, epoch, index, delays (no token)
$sg load --store tcp://127.0.0.1:7400 --cluster-key /etc/kv/cluster.key --duration 10s --rate 200
