package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/pkg/enricher"
)

type enricherData struct {
	Lag         enrichLag
	LagText     string
	Quarantined []enricher.Quarantined
}

func (c *Console) needQuarantine(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.Quarantine == nil {
		c.fail(w, r, http.StatusNotFound, "enricher", errors.New("this server has no enricher quarantine"))
		return false
	}
	return true
}

// enricherPage shows the lag of the last record this process enriched
// (the ingest endpoint's; a separate enrich tail reports its own in
// /metrics) and the quarantine, as herald enrich errors lists it.
func (c *Console) enricherPage(w http.ResponseWriter, r *http.Request) {
	if !c.needQuarantine(w, r) {
		return
	}
	rows, err := c.cfg.Quarantine.List(r.Context())
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "list the quarantine", err)
		return
	}
	for i := range rows {
		rows[i].Reason = c.cfg.Secrets.Text(rows[i].Reason)
		rows[i].Record = nil // the audit record may hold anything; the reason says what is wrong
	}
	d := enricherData{Lag: c.lastLag(), Quarantined: rows}
	if d.Lag.Set {
		d.LagText = Age(d.Lag.Lag)
	}
	c.render(w, r, http.StatusOK, "enricher", "Enricher", d)
}

// retryQuarantined re-runs one quarantined record (id) or all of them
// through Quarantine.Retry and RetryAll, what herald enrich retry calls.
func (c *Console) retryQuarantined(w http.ResponseWriter, r *http.Request) {
	if !c.needQuarantine(w, r) {
		return
	}
	var results []enricher.Result
	var err error
	if id := strings.TrimSpace(r.PostFormValue("id")); id != "" {
		var res enricher.Result
		if res, err = c.cfg.Quarantine.Retry(r.Context(), id); err == nil {
			results = append(results, res)
		}
	} else {
		results, err = c.cfg.Quarantine.RetryAll(r.Context())
	}
	enriched := 0
	for _, res := range results {
		if res.Status == enricher.StatusEnriched {
			enriched++
		}
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, enricher.ErrNotQuarantined) {
			status = http.StatusNotFound
		}
		c.fail(w, r, status, fmt.Sprintf("retry quarantined records (%d enriched before the error)", enriched), err)
		return
	}
	if enriched > 0 && c.cfg.Notify != nil {
		c.cfg.Notify()
	}
	c.log.Info("console: quarantined records retried", "retried", len(results), "enriched", enriched, "remote", r.RemoteAddr)
	c.done(w, r, Prefix+"/enricher", fmt.Sprintf("%d retried: %d enriched, %d still quarantined.", len(results), enriched, len(results)-enriched))
}
