import groupBy from 'lodash/groupBy';
import { z } from 'zod';
import semver from 'semver';

const Version = z.string().refine((v): v is string => semver.valid(v) !== null);

type Pkg = { name: string; version: string };
const pkgs: Pkg[] = [
  { name: 'typescript', version: '5.6.3' },
  { name: 'vite', version: '5.4.11' },
  { name: 'webpack', version: '5.97.1' },
  { name: 'next', version: '14.2.35' },
];

const byMajor = groupBy(pkgs, (p: Pkg) => semver.major(Version.parse(p.version)));
console.log(Object.keys(byMajor).sort((a, b) => Number(a) - Number(b)).join(','));
console.log(byMajor['5'].map((p: Pkg) => p.name).join(','));
