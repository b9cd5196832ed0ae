import { describe, expect, it } from "vitest";
import { parseLibvirtConf } from "../../../agent/src/transfer/FileLibvirtTlsDir.js";
import { backupTlsSettings, setLibvirtConf } from "../../lab/support/qemuConf.js";

describe("lab qemu.conf settings", () => {
  const settings = backupTlsSettings("/var/lib/cairn-agent/backup-tls");

  it("appends missing settings once, then leaves the file alone", () => {
    const base = '#backup_tls_x509_cert_dir = "/etc/pki/libvirt-backup"\n#backup_tls_x509_verify = 1\n';
    const a = setLibvirtConf(base, settings);
    expect(a.changed).toBe(true);
    expect(a.text.startsWith(base)).toBe(true);
    const conf = parseLibvirtConf(a.text);
    expect(conf.get("backup_tls_x509_cert_dir")).toBe("/var/lib/cairn-agent/backup-tls");
    expect(conf.get("backup_tls_x509_verify")).toBe(1);
    expect(setLibvirtConf(a.text, settings)).toEqual({ text: a.text, changed: false });
  });

  it("replaces the entry libvirt reads (the first) instead of adding a second one", () => {
    const b = setLibvirtConf(
      'user = "x"\nbackup_tls_x509_verify = 0\nbackup_tls_x509_cert_dir = "/old"\n',
      settings,
    );
    expect(b.changed).toBe(true);
    expect(b.text.match(/^backup_tls/gm)?.length).toBe(2);
    expect(parseLibvirtConf(b.text).get("backup_tls_x509_verify")).toBe(1);
    expect(b.text).toContain('user = "x"');
  });
});
