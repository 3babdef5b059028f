package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

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
func authenticate(tokens map[string]*user.DefaultInfo) authenticator.Request {
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		auth := strings.TrimSpace(req.Header.Get("Authorization"))
		if auth == "" {
			return allowAll.AuthenticateRequest(req)
		}
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return nil, false, errors.New("only bearer tokens are accepted")
		}
		info, known := tokens[strings.TrimSpace(token)]
		if !known {
			return nil, false, errors.New("invalid bearer token")
		}
		// The header is not passed on to the handlers, as kube-apiserver's bearer-token
		// authenticator removes it.
		req.Header.Del("Authorization")
		return &authenticator.Response{User: info}, true, nil
	})
}
