/** What policy selection needs to know about a VM. */
export interface VmRef {
  uuid: string;
  name: string;
  labels: Record<string, string>;
}
