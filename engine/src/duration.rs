//! Go duration strings (`"300ms"`, `"-1.5h"`, `"2h45m15s"`, `"1µs"`):
//! parsing and formatting. Placeholder until the API work lands.
