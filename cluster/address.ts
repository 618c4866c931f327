/**
 * The `--cluster` address: `etcd://HOST:PORT[,HOST:PORT...]`, the etcd members an exporter
 * reaches to elect one active exporter per storage. Parsed once, every mistake named.
 */

/** Most members listed (etcd clusters are 3 or 5 members). */
const MAX_MEMBERS = 16;

/** The etcd client endpoints (`http://HOST:PORT`) of a cluster address; throws naming the fault. */
export function parseClusterUrl(url: string): string[] {
  const scheme = "etcd://";
  if (!url.startsWith(scheme)) {
    throw new Error(`${url}: expected etcd://HOST:PORT[,HOST:PORT...]`);
  }
  const members = url.slice(scheme.length).split(",");
  if (members.length > MAX_MEMBERS) {
    throw new Error(`${url}: at most ${MAX_MEMBERS} etcd members`);
  }
  return members.map((member) => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(member);
    const port = Number(m?.[2]);
    if (m === null || port < 1 || port > 65535) {
      throw new Error(`${url}: "${member}" is not HOST:PORT`);
    }
    return `http://${m[1]}:${port}`;
  });
}
