package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"
)

// tokenFile is a --token-auth-file that is read again whenever it changes (its size, mtime or
// inode differ from the last read), so that a test can add a ServiceAccount's token while the
// server runs. kube-apiserver reads the file once; re-reading is this server's addition. A file
// that fails to parse is reported in the log and the tokens read before stay in force until the
// file changes again.
type tokenFile struct {
	path string

	mu     sync.Mutex
	sig    fileSig
	tokens map[string]*user.DefaultInfo
}

type fileSig struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino = uint64(st.Ino)
	}
	return sig, nil
}

// loadTokenFile reads the file once (an error here is fatal at start).
func loadTokenFile(path string) (*tokenFile, error) {
	sig, err := statSig(path)
	if err != nil {
		return nil, err
	}
	tokens, err := staticTokens(path)
	if err != nil {
		return nil, err
	}
	return &tokenFile{path: path, sig: sig, tokens: tokens}, nil
}

// lookup returns the user of a token, re-reading the file first when it changed.
func (t *tokenFile) lookup(token string) (*user.DefaultInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sig, err := statSig(t.path); err != nil {
		klog.Warningf("token file %s: %v (keeping the %d tokens read before)", t.path, err, len(t.tokens))
	} else if sig != t.sig {
		t.sig = sig
		if tokens, err := staticTokens(t.path); err != nil {
			klog.Errorf("token file changed but cannot be read: %v (keeping the %d tokens read before)", err, len(t.tokens))
		} else {
			t.tokens = tokens
			klog.Infof("token file %s re-read: %d tokens", t.path, len(tokens))
		}
	}
	info, ok := t.tokens[token]
	return info, ok
}

// staticTokens reads a token file in kube-apiserver's --token-auth-file format: one line per
// token, `token,user,uid` and optionally a quoted, comma-separated list of groups. Lines that
// start with '#' are comments.
func staticTokens(path string) (map[string]*user.DefaultInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.Comment = '#'
	r.TrimLeadingSpace = true
	records, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tokens := map[string]*user.DefaultInfo{}
	for i, rec := range records {
		if len(rec) < 3 || rec[0] == "" || rec[1] == "" {
			return nil, fmt.Errorf("%s: line %d: want token,user,uid[,\"groups\"]", path, i+1)
		}
		info := &user.DefaultInfo{Name: rec[1], UID: rec[2]}
		if len(rec) > 3 && rec[3] != "" {
			info.Groups = strings.Split(rec[3], ",")
		}
		info.Groups = append(info.Groups, user.AllAuthenticated)
		tokens[rec[0]] = info
	}
	return tokens, nil
}

// authenticate: a request with a bearer token is the user the token file names, and is refused
// (401) when the token is unknown, as kube-apiserver does; a request without a token is the
// tests' administrator (system:masters), so the tests' own tools need no credentials.
func authenticate(tokens *tokenFile) authenticator.Request {
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		auth := strings.TrimSpace(req.Header.Get("Authorization"))
		if auth == "" {
			return allowAll.AuthenticateRequest(req)
		}
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return nil, false, errors.New("only bearer tokens are accepted")
		}
		info, known := tokens.lookup(strings.TrimSpace(token))
		if !known {
			return nil, false, errors.New("invalid bearer token")
		}
		// The header is not passed on to the handlers, as kube-apiserver's bearer-token
		// authenticator removes it.
		req.Header.Del("Authorization")
		return &authenticator.Response{User: info}, true, nil
	})
}
