/** Config files for a one-replica Swift + s3api on loopback (Debian's swift packages, no systemd: each server started by SwiftServer). */
export interface SwiftPorts {
  proxy: number;
  account: number;
  container: number;
  object: number;
  memcached: number;
}

function server(dir: string, port: number, app: "account" | "container" | "object"): string {
  return `[DEFAULT]
devices = ${dir}/srv
mount_check = false
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
swift_dir = ${dir}/etc
user = root
log_name = ${app}-server

[pipeline:main]
pipeline = ${app}-server

[app:${app}-server]
use = egg:swift#${app}
`;
}

export function swiftConfigFiles(dir: string, ports: SwiftPorts): Record<string, string> {
  const filters = ["catch_errors", "gatekeeper", "healthcheck", "listing_formats", "copy", "slo", "dlo"]
    .map((f) => `[filter:${f}]\nuse = egg:swift#${f}\n`)
    .join("\n");
  return {
    "swift.conf": `[swift-hash]
swift_hash_path_suffix = cairn-test-suffix
swift_hash_path_prefix = cairn-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
`,
    "account-server.conf": server(dir, ports.account, "account"),
    "container-server.conf": server(dir, ports.container, "container"),
    "object-server.conf": server(dir, ports.object, "object"),
    "proxy-server.conf": `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${ports.proxy}
workers = 0
swift_dir = ${dir}/etc
user = root
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports.memcached}

[filter:proxy-logging]
use = egg:swift#proxy_logging

${filters}`,
  };
}
