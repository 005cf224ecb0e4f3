// Pure helpers of src/lib/format.ts (no browser).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatRate, formatTimeLeft } from '../src/lib/format.ts';

describe('format', () => {
  it('formatTimeLeft: roughly, as people say it', () => {
    const cases: [number, string][] = [
      [0, 'less than a minute'],
      [59.4, 'less than a minute'],
      [60, 'about 1 min'],
      [89, 'about 1 min'],
      [90, 'about 2 min'],
      [120, 'about 2 min'],
      [59 * 60, 'about 59 min'],
      [3599, 'about 1 h'],
      [85 * 60, 'about 1 h 25 min'],
      [87 * 60, 'about 1 h 25 min'],
      [9 * 3600 + 58 * 60, 'about 10 h'],
      [14 * 3600 + 20 * 60, 'about 14 h'],
      [47 * 3600, 'about 47 h'],
      [3 * 86400, 'about 3 days'],
      [-1, '–'],
      [Number.NaN, '–'],
      [Number.POSITIVE_INFINITY, '–'],
    ];
    for (const [secs, text] of cases) assert.equal(formatTimeLeft(secs), text, `${secs} s`);
  });

  it('formatRate: bytes per second in decimal units', () => {
    assert.equal(formatRate(0), '0 B/s');
    assert.equal(formatRate(850_000), '850 KB/s');
    assert.equal(formatRate(3_200_000), '3.2 MB/s');
    assert.equal(formatRate(-5), '–');
  });
});
