import type { Role } from "../store/records.js";

/**
 * The least role each admin method needs. viewer: reads only; operator: also starts and cancels
 * backups, applies policies, verifies; admin: everything, including deletions, tokens and space
 * reclamation. Methods not listed are denied to every role (new RPCs must be placed here).
 */
const LEAST_ROLE: Record<string, Role> = {
  ListHosts: "viewer",
  ListVms: "viewer",
  ListPolicies: "viewer",
  ListJobs: "viewer",
  WatchJob: "viewer",
  ListSnapshots: "viewer",
  ShowSnapshot: "viewer",
  ListRepositories: "viewer",
  ShowRepository: "viewer",
  RepositoryStats: "viewer",
  ListAudit: "viewer",
  ShowVmChain: "viewer",
  DrainHost: "operator",
  UndrainHost: "operator",
  BackupNow: "operator",
  CancelJob: "operator",
  ApplyPolicy: "operator",
  VerifyRepository: "operator",
  RestoreDisk: "operator",
  RestoreVm: "operator",
  DeletePolicy: "admin",
  PruneRepository: "admin",
  GcRepository: "admin",
  RegisterRepository: "admin",
  CreateToken: "admin",
  ListTokens: "admin",
  RevokeToken: "admin",
  CreateEnrollmentToken: "admin",
};

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAllows(role: Role, method: string): boolean {
  const need = LEAST_ROLE[method];
  return need !== undefined && RANK[role] >= RANK[need];
}

export function knownAdminMethods(): string[] {
  return Object.keys(LEAST_ROLE);
}
