// One route, asked about as its opening would be but without opening anything: the destination
// looks the route up, checks --allow for this client, looks at its socket (present, a socket it
// may connect to, listened on) without connecting, and says what it found.
import { OpenRefusedError, openDeadlineMs, requestOpen, type Session } from '../tunnel/index.js';
import { failed, passed, type Step } from './step.js';

/** `client`: this side's certificate CN, for the --allow rule to suggest. */
export async function probeRoute(session: Session, route: string, client: string | undefined): Promise<Step> {
  try {
    const stream = session.open();
    const reply = await requestOpen(stream, { probe: route }, openDeadlineMs(session));
    stream.destroy(); // nothing more to say; the destination has closed its end already
    return passed(`route ${route}: known, allowed for ${reply.identity ?? 'this client'}, socket ${reply.socket ?? '(not named)'} listening`);
  } catch (error) {
    if (error instanceof OpenRefusedError) return failed(`route ${route}: ${whatToFix(route, error, client)}`);
    return failed(`route ${route}: no answer from the destination: ${(error as Error).message}`);
  }
}

function whatToFix(route: string, refusal: OpenRefusedError, client: string | undefined): string {
  switch (refusal.code) {
    case 'bad-open-request':
      // A destination from before probes reads one as a malformed open request.
      return `the destination is older and cannot be probed (it answered: ${refusal.message}); upgrade nbd-tunnel there to check routes`;
    case 'unknown-route':
      return `${refusal.message}; add it on the destination (--route ${route}=SOCKET, or a socket ${route}.sock in its --route-dir) or correct the name here`;
    case 'not-allowed':
      return `${refusal.message}; on the destination, add --allow '${route}=${client ?? 'IDENTITY'}' or a rule whose pattern covers the route`;
    default:
      return refusal.message;
  }
}
