#!/usr/bin/env python3
"""Print the fault matrix's table (docs/RELIABILITY.md) from the rows the
cases appended to SEGOPS_FAULT_REPORT (one JSON object a line).

    python3 tests/fault/table.py REPORT
"""

import json
import sys

COLUMNS = ('fault', 'acknowledged', 'delivered', 'lost',
           'duplicate resends', 'dropped (stats)', 'verdict',
           'what stats and the log said')


def cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def dropped(d):
    if not isinstance(d, dict):
        return ''
    return ', '.join('%s %d' % (k, v) for k, v in sorted(d.items())) or '0'


def main(path):
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print('| ' + ' | '.join(COLUMNS) + ' |')
    print('|' + '---|' * len(COLUMNS))
    failed = 0
    for r in rows:
        verdict = r.get('verdict', '?')
        notes = r.get('notes', '')
        if verdict != 'pass':
            failed += 1
            notes = '%s. **Failed: %s**' % (notes, r.get('failure', ''))
        unacked = r.get('unacknowledged_sent', 0)
        delivered = r.get('delivered', '')
        if unacked:
            # Chunks a kill cut off: sent, never acknowledged; some of
            # them may have arrived, and count as delivered.
            delivered = '%s (sent unacknowledged: %s)' % (delivered, unacked)
        print('| ' + ' | '.join(cell(c) for c in (
            r.get('fault', r.get('case')), r.get('acknowledged', ''),
            delivered, r.get('lost', ''), r.get('duplicates', ''),
            dropped(r.get('dropped')), verdict, notes)) + ' |')
    print()
    print('%d cases, %d failed; scale %s, seed %s; %.0f s in all.' % (
        len(rows), failed, rows[0].get('scale') if rows else '?',
        rows[0].get('seed') if rows else '?',
        sum(r.get('seconds', 0) for r in rows)))
    return 1 if failed else 0


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
