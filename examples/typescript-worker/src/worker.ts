// The expense's policy check (the `validate` step) as a worker in TypeScript on nats.js, written from
// docs/job-protocol.md alone: no library of this project. Its score is 0.9 for an amount within POLICY_LIMIT and 0
// above it; the expense's route sends a score under 0.05 to Error, with the note the definition makes of it.
//   NATS_URL (servers, comma separated), WF_PREFIX (wf), POLICY_LIMIT (5000), WORKER_NAME (policy-checks)
import { connect, headers, nanos, type Msg } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";

interface Job {
  message_id: string;
  workflow_id: string;
  correlation_id?: string | null;
  job_id: string;
  workflow_type: string;
  step: string;
  attempt: number;
  try_number: number;
  context: { input?: { amount?: number } } & Record<string, unknown>;
  timeout_at?: string | null;
}

const prefix = process.env.WF_PREFIX ?? "wf";
const name = process.env.WORKER_NAME ?? "policy-checks";
const limit = Number(process.env.POLICY_LIMIT ?? "5000");
const stream = `${prefix.toUpperCase()}_JOBS`;
const HEARTBEAT_MS = 1500; // "in progress" well within the consumer's 5 s ack wait

const nc = await connect({
  servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(","),
  inboxPrefix: "_INBOX_worker", // the replies the `worker` NATS user may read
  maxReconnectAttempts: -1,
  pingInterval: 5_000, // a server gone silent is given up after three unanswered pings (docs/job-protocol.md)
  maxPingOut: 3,
});
const jsm = await jetstreamManager(nc);
await jsm.consumers.add(stream, {
  name,
  durable_name: name,
  filter_subjects: [`${prefix}.jobs.expense.validate`],
  ack_policy: AckPolicy.Explicit,
  ack_wait: nanos(5_000),
  max_deliver: 5,
});
const js = jetstream(nc);
const messages = await (await js.consumers.get(stream, name)).consume({ max_messages: 8 });
console.log(`${name} takes ${prefix}.jobs.expense.validate`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => void messages.close()); // the job in hand finishes, then the loop below ends
}

for await (const message of messages) {
  await take(message);
}
await nc.drain();

async function take(message: JsMsg): Promise<void> {
  let job: Job;
  try {
    job = message.json<Job>();
    if (typeof job.job_id !== "string" || typeof job.workflow_id !== "string") throw new Error("no job_id");
  } catch (error) {
    const why = headers();
    why.set("Wf-Error", String(error).slice(0, 1000));
    why.set("Wf-Subject", message.subject);
    await js.publish(`${prefix}.dead.jobs`, message.data, { headers: why });
    message.ack();
    return;
  }
  if (job.timeout_at && Date.parse(job.timeout_at) <= Date.now()) {
    message.ack(); // its try was given up: a new try comes as a new job
    return;
  }
  const heartbeat = setInterval(() => message.working(), HEARTBEAT_MS);
  const givesUp = (event: { type?: string; job_id?: string }) =>
    event.type === "WorkflowCancelled" ||
    event.type === "WorkflowTerminated" ||
    ((event.type === "StepAttemptFailed" || event.type === "StepCompleted") && event.job_id === job.job_id);
  let givenUp = false; // the workflow was cancelled, or this try recorded as over, while it ran
  const events = `${prefix}.events.${job.workflow_id}`;
  const watch = nc.subscribe(events, {
    callback: (_error, event: Msg) => {
      givenUp ||= givesUp(event.json());
    },
  });
  try {
    // A cancel may have come while the job waited in the queue, before the watch: the log's last event says so.
    const last = await jsm.direct.getMessage(`${prefix.toUpperCase()}_EVENTS`, { last_by_subj: events });
    givenUp ||= last !== null && givesUp(last.json());
    const amount = Number(job.context.input?.amount ?? 0);
    const answer = {
      schema_version: 1,
      message_id: `${job.job_id}-result`, // one answer per job, however often it runs
      workflow_id: job.workflow_id,
      occurred_at: new Date().toISOString(),
      causation_id: job.message_id,
      correlation_id: job.correlation_id,
      job_id: job.job_id,
      kind: "complete_job",
      result: { output: amount <= limit ? 0.9 : 0 },
    };
    const answering = !givenUp; // (an event after this point is this answer's own StepCompleted)
    if (answering) {
      const subject = `${prefix}.results.${job.workflow_id}`;
      await js.publish(subject, JSON.stringify(answer), { msgID: answer.message_id });
    }
    message.ack(); // only once the answer is stored: a worker that dies before leaves the job to another
    console.log(`job ${job.job_id} of ${job.workflow_id}: ${answering ? `score ${answer.result.output}` : "given up"}`);
  } catch (error) {
    console.error(`job ${job.job_id}: no answer sent (${error}); it comes again after the ack wait`);
  } finally {
    clearInterval(heartbeat);
    watch.unsubscribe();
  }
}
