/** Keys of an open repository. Both absent = unencrypted repository (ids are plain SHA-256). */
export interface RepositoryKeys {
  /** AES-256-GCM key for object payloads. */
  dataKey: Buffer;
  /** HMAC-SHA-256 key for chunk and index ids. */
  idKey: Buffer;
}
