'use strict';
// dayjs with plugins and a locale, all required by deep path.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const dayjs = require('dayjs');
dayjs.extend(require('dayjs/plugin/utc'));
dayjs.extend(require('dayjs/plugin/isLeapYear'));
dayjs.extend(require('dayjs/plugin/customParseFormat'));
require('dayjs/locale/fr');

const d = dayjs.utc('2024-02-29T12:34:56Z');
assert.equal(d.isLeapYear(), true);
assert.equal(d.add(1, 'year').format('YYYY-MM-DD'), '2025-02-28');
assert.equal(d.startOf('month').format('YYYY-MM-DDTHH:mm:ss'), '2024-02-01T00:00:00');
assert.equal(d.locale('fr').format('dddd D MMMM YYYY'), 'jeudi 29 février 2024');
assert.equal(dayjs.utc('31/12/2023 23:59', 'DD/MM/YYYY HH:mm').add(1, 'minute').toISOString(), '2024-01-01T00:00:00.000Z');
assert.equal(dayjs.utc('2024-03-10').diff(dayjs.utc('2024-01-01'), 'day'), 69);

console.log('dayjs', pkgVersion('dayjs', __dirname), 'ok');
