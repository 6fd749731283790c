// ESM-only packages (chalk 5, date-fns 4 ESM entry) loaded with import.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import chalk, { Chalk, supportsColor } from 'chalk';
import { addDays, differenceInCalendarDays, format, formatISO, parseISO } from 'date-fns';
import { fr } from 'date-fns/locale';

const c = new Chalk({ level: 1 });
assert.equal(c.red('x'), '\u001b[31mx\u001b[39m');
assert.equal(c.bold.green('ok'), '\u001b[1m\u001b[32mok\u001b[39m\u001b[22m');
assert.equal(new Chalk({ level: 0 }).blue('plain'), 'plain');
assert.equal(typeof chalk.level, 'number');
assert.ok(supportsColor === false || typeof supportsColor === 'object');

const start = new Date(2024, 0, 31);
assert.equal(format(addDays(start, 1), 'yyyy-MM-dd'), '2024-02-01');
assert.equal(format(start, 'EEEE d MMMM yyyy', { locale: fr }), 'mercredi 31 janvier 2024');
assert.equal(differenceInCalendarDays(parseISO('2024-03-01'), parseISO('2024-02-01')), 29);
assert.match(formatISO(start, { representation: 'date' }), /^2024-01-31$/);

const { pkgVersion } = createRequire(import.meta.url)('../lib/pkg.js');
const here = fileURLToPath(new URL('.', import.meta.url));
console.log('chalk', pkgVersion('chalk', here), 'date-fns', pkgVersion('date-fns', here));
console.log('esm chalk/date-fns ok');
