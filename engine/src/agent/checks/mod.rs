//! Check runners: one probe per kind and the scheduler that runs interval
//! checks with jitter, timeouts, output caps and thresholds. (Placeholder:
//! the runners land with the agent work.)
