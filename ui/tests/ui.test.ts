// All UI suites in one process, sharing one Chromium and one static server (see harness.ts).
// Run a single suite with: node --import tsx --test tests/<name>.ui.ts
import './wizard.ui.ts';
import './peers.ui.ts';
import './history.ui.ts';
import './shell.ui.ts';
