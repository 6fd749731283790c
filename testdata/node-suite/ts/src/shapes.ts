import { z } from 'zod';

export enum Kind {
  File = 'file',
  Dir = 'dir',
  Symlink = 'symlink',
}

export const Entry = z.object({
  path: z.string(),
  kind: z.nativeEnum(Kind),
  size: z.number().int().nonnegative(),
  mode: z.number().int().optional(),
});
export type Entry = z.infer<typeof Entry>;

export interface Summary<K extends string> {
  readonly counts: Record<K, number>;
  readonly bytes: number;
}

export function summarize(entries: readonly Entry[]): Summary<Kind> {
  const counts = { [Kind.File]: 0, [Kind.Dir]: 0, [Kind.Symlink]: 0 } as Record<Kind, number>;
  let bytes = 0;
  for (const e of entries) {
    counts[e.kind] += 1;
    bytes += e.kind === Kind.File ? e.size : 0;
  }
  return { counts, bytes };
}
