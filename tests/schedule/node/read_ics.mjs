// Reads an .ics file with ical.js and node-ical; prints, per library, each event's UID with its
// start and end as UTC instants (ISO 8601), so a Python test can compare them with --format json.
// usage: node read_ics.mjs <node_modules dir> <file.ics>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
const text = readFileSync(file, "utf8");

const ICAL = (await import(pathToFileURL(path.join(modules, "ical.js", "dist", "ical.js")).href)).default;
const root = new ICAL.Component(ICAL.parse(text));
for (const zone of root.getAllSubcomponents("vtimezone")) {
  ICAL.TimezoneService.register(new ICAL.Timezone(zone));
}
const icaljs = root.getAllSubcomponents("vevent").map((component) => {
  const event = new ICAL.Event(component);
  return {
    uid: event.uid,
    start: event.startDate.toJSDate().toISOString(),
    end: event.endDate.toJSDate().toISOString(),
  };
});

const require = createRequire(path.join(modules, "noop.js"));
const nodeIcal = require("node-ical");
const parsed = nodeIcal.sync.parseICS(text);
const nodeical = Object.values(parsed)
  .filter((item) => item.type === "VEVENT")
  .map((item) => ({ uid: item.uid, start: item.start.toISOString(), end: item.end.toISOString() }));

process.stdout.write(JSON.stringify({ "ical.js": icaljs, "node-ical": nodeical }) + "\n");
