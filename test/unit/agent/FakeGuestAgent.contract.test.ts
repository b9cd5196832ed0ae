import { FakeGuestAgent } from "../../support/fakes/FakeGuestAgent.js";
import { guestAgentContract } from "../../support/guestAgentContract.js";

const fake = new FakeGuestAgent();
fake.addGuest("live");
fake.addGuest("silent", { agentRunning: false });
guestAgentContract("FakeGuestAgent", () => ({ agent: fake, live: "live", silent: "silent" }));
