interface Entry {
  path: string;
  kind: 'file' | 'dir' | 'symlink';
  size?: number;
}
export const sizeOf = (entries: Entry[]): number =>
  entries
    .filter((e) => e.kind === 'file')
    .reduce((a, e) => a + (e.size ?? 0), 0);
