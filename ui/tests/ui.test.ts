// All UI suites in one process, sharing one Chromium and one static server (see harness.ts),
// and the unit tests of the pure helpers.
// Run a single suite with: node --import tsx --test tests/<name>.ui.ts
import './format.unit.ts';
import './wizard.ui.ts';
import './peers.ui.ts';
import './history.ui.ts';
import './trash.ui.ts';
import './deletions.ui.ts';
import './shell.ui.ts';
import './settings.ui.ts';
import './updates.ui.ts';
import './window.ui.ts';
