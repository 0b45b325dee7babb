package profile

// A file's tables are charged to the user of the process that loaded them
// (its real uid), until no process maps the file any more. Root (uid 0: the
// administrator's services, and containers without a user namespace) is
// bounded only per file and by the total; every other user gets at most a
// quarter, and all of them together at most half, so one local user, or
// several, cannot take what root's processes need. A file that does not fit
// is not loaded: its frames are walked by frame pointers (rows) or left
// unnamed (symbols), and nothing already loaded is evicted.

// skipReason says why a file's table was not loaded; "" when it was.
type skipReason string

const (
	skipFile       skipReason = "file_limit"  // larger than one file may be
	skipUser       skipReason = "user_limit"  // its user's share is taken
	skipUsers      skipReason = "users_limit" // the share of all non-root users is taken
	skipFull       skipReason = "table_full"  // no room left at all
	skipUnreadable skipReason = "unreadable"  // the file could not be parsed
)

// skipReasons are the reasons metrics are labelled with, in order.
var skipReasons = []skipReason{skipFile, skipUser, skipUsers, skipFull, skipUnreadable}

// retry reports whether a file refused for r may fit later or for another
// user: only its own size and content are final.
func (r skipReason) retry() bool { return r != skipFile && r != skipUnreadable }

// limits bound what one file, one non-root user, all non-root users
// together, and everything may hold, in a unit (rows, bytes).
type limits struct {
	file, user, users, total int64
}

// shareLimits divides total as the comment above says, with a per-file
// limit of file.
func shareLimits(total, file int64) limits {
	return limits{file: file, user: total / 4, users: total / 2, total: total}
}

// shares is what each user is charged, within limits.
type shares struct {
	lim   limits
	byUID map[uint32]int64
	// users is the sum for every uid but 0, all for every uid.
	users, all int64
}

func newShares(lim limits) *shares { return &shares{lim: lim, byUID: map[uint32]int64{}} }

// admit says whether uid may be charged n more, and if not why.
func (s *shares) admit(uid uint32, n int64) skipReason {
	switch {
	case n > s.lim.file:
		return skipFile
	case uid != 0 && s.byUID[uid]+n > s.lim.user:
		return skipUser
	case uid != 0 && s.users+n > s.lim.users:
		return skipUsers
	case s.all+n > s.lim.total:
		return skipFull
	}
	return ""
}

func (s *shares) charge(uid uint32, n int64) {
	s.byUID[uid] += n
	s.all += n
	if uid != 0 {
		s.users += n
	}
}

func (s *shares) refund(uid uint32, n int64) {
	if s.byUID[uid] -= n; s.byUID[uid] <= 0 {
		delete(s.byUID, uid)
	}
	s.all -= n
	if uid != 0 {
		s.users -= n
	}
}
