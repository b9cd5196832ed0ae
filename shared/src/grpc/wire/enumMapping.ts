import { CairnError } from "../../errors/CairnError.js";

/**
 * A two-way map between a string union the code uses and a proto enum. The wire's UNSPECIFIED (0)
 * and values this build does not know (a newer peer) map to no name: fromWire throws
 * invalid-argument naming the field, so callers that allow "unset" check for 0 first.
 */
export interface EnumMapping<Name extends string, Wire extends number> {
  readonly names: readonly Name[];
  toWire(name: Name): Wire;
  fromWire(value: Wire, field: string): Name;
  /** A name given as text (a CLI flag, a config value); invalid-argument naming `field` if it is none. */
  parse(value: string, field: string): Name;
  /** The name, or undefined for UNSPECIFIED or a value this build does not know. */
  nameOf(value: Wire): Name | undefined;
}

export function enumMapping<Name extends string, Wire extends number>(
  what: string,
  byName: Readonly<Record<Name, Wire>>,
): EnumMapping<Name, Wire> {
  const names = Object.keys(byName) as Name[];
  const byWire = new Map<number, Name>(names.map((n) => [byName[n], n]));
  return {
    names,
    toWire: (name) => byName[name],
    fromWire(value, field) {
      const name = byWire.get(value);
      if (name === undefined)
        throw new CairnError(
          "invalid-argument",
          `${field} ${value} is not ${what} (one of ${names.join(", ")})`,
        );
      return name;
    },
    parse(value, field) {
      if (!Object.hasOwn(byName, value))
        throw new CairnError("invalid-argument", `${field} ${value} is not one of ${names.join(", ")}`);
      return value as Name;
    },
    nameOf: (value) => byWire.get(value),
  };
}
